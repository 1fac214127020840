"""Policy checks: injection block and false-positive rates, topic matching, PII, grounding AUROC, latency per check.

* Injection — ``benchmarks/data/injection.jsonl`` (built by ``benchmarks/injection_set.py``):
  attacks in questions and hidden in passages, and benign look-alikes. The detector was
  tuned on the ``dev`` half only; the ``test`` half is the reported number.
* Refused topics — ``benchmarks/data/refused_topics.jsonl`` (keyword-free paraphrases of
  refused requests and benign questions on the same subjects) plus random SQuAD questions
  as the everyday false-positive base, with the default policy's keyword and embedding
  matchers.
* PII — redactions on every SQuAD passage (all of them are false positives: the passages
  carry no personal data) and on generated positives.
* Grounding — SQuAD gold answers scored against their own passage and against a wrong one
  (a random passage of another article, and a passage of the same article): AUROC per
  method. With ``--reader N``, also the real SmolLM2 reader's answers on N questions.
* Latency — mean time per call of each check, on this machine.

Run: ``.venv/bin/python benchmarks/policy.py [--grounding-n 400] [--reader 0]``.
Prints tables and writes ``benchmarks/results/policy.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _squad_dir() -> Path:
    explicit = os.environ.get("SETPOINT_SQUAD_DIR")
    return Path(explicit) if explicit else HERE.parents[1] / "shared" / "data" / "squad"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def _timed(fn: Callable[[str], Any], texts: Sequence[str]) -> tuple[list[Any], float]:
    """Results and mean milliseconds per call."""
    started = time.perf_counter()
    out = [fn(t) for t in texts]
    return out, (time.perf_counter() - started) * 1000 / max(1, len(texts))


def _auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    # Mann-Whitney U: the chance a random positive outscores a random negative (ties count half).
    wins = 0.0
    for p in positives:
        for n in negatives:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(positives) * len(negatives))


def _rate(hits: int, total: int) -> str:
    return f"{hits}/{total} = {100 * hits / total:.1f}%" if total else "n/a"


def bench_injection(policy: Any) -> dict[str, Any]:
    items = _jsonl(HERE / "data" / "injection.jsonl")
    verdicts, ms = _timed(policy.injection, [i["text"] for i in items])
    report: dict[str, Any] = {"ms_per_text": ms, "splits": {}}
    for split in ("dev", "test", "all"):
        chosen = [
            (i, v)
            for i, v in zip(items, verdicts, strict=True)
            if split == "all" or i["split"] == split
        ]
        attacks = [(i, v) for i, v in chosen if i["label"] == "injection"]
        benign = [(i, v) for i, v in chosen if i["label"] == "benign"]
        blocked = sum(not v.allowed for _i, v in attacks)
        false_pos = sum(not v.allowed for _i, v in benign)
        per_technique: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        per_carrier: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for i, v in attacks:
            per_technique[i["technique"]][0] += not v.allowed
            per_technique[i["technique"]][1] += 1
            per_carrier[i["carrier"]][0] += not v.allowed
            per_carrier[i["carrier"]][1] += 1
        benign_carrier: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for i, v in benign:
            benign_carrier[i["carrier"]][0] += not v.allowed
            benign_carrier[i["carrier"]][1] += 1
        report["splits"][split] = {
            "attacks": len(attacks),
            "blocked": blocked,
            "block_rate": blocked / len(attacks),
            "benign": len(benign),
            "false_positives": false_pos,
            "false_positive_rate": false_pos / len(benign),
            "per_technique": {
                k: {"blocked": b, "total": t} for k, (b, t) in sorted(per_technique.items())
            },
            "per_carrier": {
                k: {"blocked": b, "total": t} for k, (b, t) in sorted(per_carrier.items())
            },
            "benign_per_carrier": {
                k: {"flagged": f, "total": t} for k, (f, t) in sorted(benign_carrier.items())
            },
            "misses": [i["id"] for i, v in attacks if v.allowed],
            "false_positive_ids": [i["id"] for i, v in benign if not v.allowed],
        }
    return report


def bench_topics(
    policy: Any, embedder: Any, squad_questions: list[dict[str, Any]], n_squad: int
) -> dict[str, Any]:
    items = _jsonl(HERE / "data" / "refused_topics.jsonl")
    rng = random.Random(11)
    squad = [q["question"] for q in rng.sample(squad_questions, n_squad)]
    texts = [i["text"] for i in items] + squad
    # Groups: refused/benign of the dev half (examples and threshold were chosen on it), of
    # the test half (written after that), and everyday SQuAD questions.
    groups = [f"{i['label']}_{i['split']}" for i in items] + ["squad"] * len(squad)
    keyword, keyword_ms = _timed(policy.refused_topic, texts)
    policy.topics.closest("warm up", embedder)  # embeds the examples once, outside the timing
    semantic, semantic_ms = _timed(lambda text: policy.refused_topic(text, embedder), texts)
    closest = [max(policy.topics.closest(t, embedder).values()) for t in texts]
    names = ["refused_dev", "benign_dev", "refused_test", "benign_test", "squad"]

    def flagged(decisions: Sequence[bool]) -> dict[str, list[int]]:
        return {
            g: [sum(d for d, gg in zip(decisions, groups, strict=True) if gg == g), groups.count(g)]
            for g in names
        }

    sweep = {
        f"{t:.2f}": flagged(
            [c >= t or not k.allowed for c, k in zip(closest, keyword, strict=True)]
        )
        for t in (0.45, 0.5, 0.55, 0.6, 0.65)
    }
    return {
        "keyword_only": flagged([not v.allowed for v in keyword]),
        "keyword_and_embedding": flagged([not v.allowed for v in semantic]),
        "threshold_sweep": sweep,
        "ms_keyword": keyword_ms,
        "ms_keyword_and_embedding": semantic_ms,
        "wrong": [
            {"group": g, "text": t, "closest": round(c, 3)}
            for t, g, c, v in zip(texts, groups, closest, semantic, strict=True)
            if (g.startswith("refused")) == v.allowed
        ],
    }


def bench_pii(policy: Any, passages: list[dict[str, Any]]) -> dict[str, Any]:
    from setpoint.tools.pii import luhn_is_valid

    texts = [p["text"] for p in passages]
    results, ms = _timed(policy.redact, texts)
    false_hits = [
        (p["id"], kinds) for p, (_t, kinds) in zip(passages, results, strict=True) if kinds
    ]
    rng = random.Random(5)

    def card() -> str:
        while True:
            digits = "4" + "".join(rng.choice("0123456789") for _ in range(15))
            if luhn_is_valid(digits):
                return " ".join(digits[i : i + 4] for i in range(0, 16, 4))

    samples = {
        "email": [f"user{i}.name@example{i % 7}.org" for i in range(50)],
        "phone": [f"+1 (415) 555-{1000 + i:04d}" for i in range(25)]
        + [
            f"0{rng.randint(1, 9)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
            for _ in range(25)
        ],
        "card": [card() for _ in range(50)],
        "iban": [
            "GB82 WEST 1234 5698 7654 32",
            "DE89370400440532013000",
            "FR1420041010050500013M02606",
            "NL91ABNA0417164300",
        ]
        * 12,
    }
    recall = {}
    for kind, values in samples.items():
        found = 0
        for value in values:
            text = f"You can reach the owner at {value} for details."
            found += kind in policy.redact(text)[1]
        recall[kind] = {"found": found, "total": len(values)}
    return {
        "squad_passages": len(texts),
        "passages_with_false_redactions": len(false_hits),
        "false_redactions": false_hits[:20],
        "recall_on_generated": recall,
        "ms_per_passage": ms,
    }


class CachedEmbeddings:
    """Wraps an embedder with a text -> vector cache (each SQuAD sentence is scored many times)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cache: dict[str, list[float]] = {}

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, self.inner.embed_documents(missing), strict=True))
        return [self.cache[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def bench_grounding(
    embedder: Any,
    questions: list[dict[str, Any]],
    passages: dict[str, dict[str, Any]],
    n: int,
    threshold: float,
) -> dict[str, Any]:
    from setpoint.tools.support import support_score

    rng = random.Random(3)
    by_title: dict[str, list[str]] = defaultdict(list)
    for pid, p in passages.items():
        by_title[p["title"]].append(pid)
    ids = list(passages)
    cases = []
    for q in rng.sample(questions, n):
        right = passages[q["passage_id"]]
        other = rng.choice([i for i in ids if passages[i]["title"] != right["title"]])
        same = [i for i in by_title[right["title"]] if i != right["id"]]
        cases.append(
            (
                q["answers"][0],
                right["text"],
                passages[other]["text"],
                passages[rng.choice(same)]["text"] if same else None,
            )
        )
    cached = CachedEmbeddings(embedder)
    out: dict[str, Any] = {"questions": n}
    for method in ("lexical", "embedding", "hybrid"):
        started = time.perf_counter()
        pos, neg_other, neg_same = [], [], []
        for answer, right, other, same in cases:

            def score(text: str) -> float:
                return support_score(answer, [text], method=method, embedder=cached)  # noqa: B023

            pos.append(score(right))
            neg_other.append(score(other))
            if same is not None:
                neg_same.append(score(same))
        calls = len(pos) + len(neg_other) + len(neg_same)
        out[method] = {
            "auroc_vs_other_article": _auroc(pos, neg_other),
            "auroc_vs_same_article": _auroc(pos[: len(neg_same)], neg_same) if neg_same else None,
            "pos_median": statistics.median(pos),
            "neg_other_median": statistics.median(neg_other),
            "neg_same_median": statistics.median(neg_same) if neg_same else None,
            "threshold": threshold,
            "right_below_threshold": sum(p < threshold for p in pos) / len(pos),
            "other_at_or_above_threshold": sum(x >= threshold for x in neg_other) / len(neg_other),
            "same_at_or_above_threshold": sum(x >= threshold for x in neg_same) / len(neg_same)
            if neg_same
            else None,
            "ms_per_pair_cached_embeddings": (time.perf_counter() - started) * 1000 / calls,
        }
    # Uncached cost of one embedding-based check: an answer against three passages.
    sample = cases[0]
    started = time.perf_counter()
    support_score(sample[0], [sample[1], sample[2], sample[1]], method="hybrid", embedder=embedder)
    out["ms_hybrid_uncached_3_passages"] = (time.perf_counter() - started) * 1000
    return out


def bench_reader(
    questions: list[dict[str, Any]], passages: dict[str, dict[str, Any]], n: int, threshold: float
) -> dict[str, Any]:
    """The real reader on N questions (gold passage + two distractors), budget already spent.

    Records whether the answer is right, its lexical support, and whether the thermostat
    (default Context) would have fired again after the retrieval budget.
    """
    from setpoint.adapters.model.generator import Generator, Passage
    from setpoint.agents.thermostat import Thermostat
    from setpoint.graphs.context import Context
    from setpoint.settings import Settings
    from setpoint.tools.support import support_score

    settings = Settings.from_env()
    generator = Generator.from_pretrained(
        settings.generator_dir, threads=settings.threads, precision=settings.precision
    )
    thresholds = Context()
    rng = random.Random(21)
    ids = list(passages)
    rows = []
    for q in rng.sample(questions, n):
        gold = passages[q["passage_id"]]
        shown = [gold, *(passages[i] for i in rng.sample(ids, 2))]
        rng.shuffle(shown)
        prompt = generator.prompt_ids(
            q["question"], [Passage(p["id"], p["title"], p["text"]) for p in shown]
        )
        thermostat = Thermostat(thresholds, retrievals_used=thresholds.max_retrievals)
        pieces, entropies = [], []
        for token in generator.stream(prompt, max_new_tokens=32):
            thermostat.update(token.signals.entropy)
            if token.token_id in generator.stop_ids:
                break
            pieces.append(token.text)
            entropies.append(token.signals.entropy)
        answer = "".join(pieces).strip()
        rows.append(
            {
                "question": q["question"],
                "answer": answer,
                "correct": any(_norm(a) in _norm(answer) for a in q["answers"]),
                "support": support_score(answer, [p["text"] for p in shown], method="lexical"),
                "fired_after_budget": thermostat.fired_after_budget,
                "mean_entropy": statistics.fmean(entropies) if entropies else 0.0,
            }
        )
    right = [r for r in rows if r["correct"]]
    wrong = [r for r in rows if not r["correct"]]
    return {
        "questions": n,
        "correct": len(right),
        "fired_after_budget": {
            "correct": sum(r["fired_after_budget"] for r in right),
            "wrong": sum(r["fired_after_budget"] for r in wrong),
        },
        "support_auroc_correct_vs_wrong": _auroc(
            [r["support"] for r in right], [r["support"] for r in wrong]
        )
        if right and wrong
        else None,
        "below_threshold": {
            "threshold": threshold,
            "correct": sum(r["support"] < threshold for r in right),
            "wrong": sum(r["support"] < threshold for r in wrong),
        },
        "rows": rows,
    }


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--grounding-n", type=int, default=400, help="SQuAD questions for the AUROC"
    )
    parser.add_argument(
        "--topic-squad-n",
        type=int,
        default=500,
        help="SQuAD questions as topic false-positive base",
    )
    parser.add_argument(
        "--reader", type=int, default=0, help="also score N real reader answers (slow)"
    )
    parser.add_argument("--out", default=str(HERE / "results" / "policy.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from setpoint.adapters.model.embedder import Embedder
    from setpoint.settings import Settings
    from setpoint.tools.policy import load_policy

    policy = load_policy()
    embedder = Embedder.from_settings(Settings.from_env())
    embedder.embed_query("load")
    squad = _squad_dir()
    questions = _jsonl(squad / "questions.jsonl")
    passage_list = _jsonl(squad / "passages.jsonl")
    passages = {p["id"]: p for p in passage_list}

    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "injection": bench_injection(policy),
        "topics": bench_topics(policy, embedder, questions, args.topic_squad_n),
        "pii": bench_pii(policy, passage_list),
        "grounding": bench_grounding(
            embedder,
            questions,
            passages,
            args.grounding_n,
            policy.grounding.threshold if policy.grounding else 0.5,
        ),
    }
    if args.reader:
        threshold = policy.grounding.threshold if policy.grounding else 0.5
        results["reader_grounding"] = bench_reader(questions, passages, args.reader, threshold)

    inj = results["injection"]
    print("Prompt injection (rules + scored detector, every decoded view)")
    print("| split | attacks blocked | benign flagged (false positives) |\n|---|---:|---:|")
    for split in ("dev", "test", "all"):
        s = inj["splits"][split]
        print(
            f"| {split} | {_rate(s['blocked'], s['attacks'])} | {_rate(s['false_positives'], s['benign'])} |"
        )
    print("\nHeld-out (test) by technique:")
    for name, c in inj["splits"]["test"]["per_technique"].items():
        print(f"  {name:12s} {_rate(c['blocked'], c['total'])}")
    for name, c in inj["splits"]["test"]["per_carrier"].items():
        print(f"  in {name:9s} {_rate(c['blocked'], c['total'])}")
    top = results["topics"]
    print("\nRefused topics (default policy): flagged / total")
    print(
        "| matcher | refused (dev) | benign look-alikes (dev) | refused (test) | benign look-alikes (test) | SQuAD questions |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, row in (
        ("keywords", top["keyword_only"]),
        ("keywords + embedding", top["keyword_and_embedding"]),
    ):
        print(f"| {label} | " + " | ".join(f"{f}/{n}" for f, n in row.values()) + " |")
    for t, row in top["threshold_sweep"].items():
        print(f"| embedding at {t} | " + " | ".join(f"{f}/{n}" for f, n in row.values()) + " |")
    pii = results["pii"]
    print(
        f"\nPII: {pii['passages_with_false_redactions']}/{pii['squad_passages']} SQuAD passages falsely redacted; recall on generated: "
        + ", ".join(f"{k} {v['found']}/{v['total']}" for k, v in pii["recall_on_generated"].items())
    )
    gr = results["grounding"]
    print(f"\nGrounding AUROC on {gr['questions']} SQuAD gold answers (right passage vs wrong)")
    print(
        "| method | vs other article | vs same article | median right / other / same |\n|---|---:|---:|---|"
    )
    for method in ("lexical", "embedding", "hybrid"):
        g = gr[method]
        print(
            f"| {method} | {g['auroc_vs_other_article']:.3f} | {g['auroc_vs_same_article']:.3f} | {g['pos_median']:.2f} / {g['neg_other_median']:.2f} / {g['neg_same_median']:.2f} |"
        )
    if "reader_grounding" in results:
        rg = results["reader_grounding"]
        fired = rg["fired_after_budget"]
        below = rg["below_threshold"]
        print(
            f"\nReal reader, {rg['questions']} SQuAD questions (gold + 2 distractors): {rg['correct']} correct"
        )
        print(
            f"  thermostat fired again after the budget: {fired['correct']}/{rg['correct']} correct, {fired['wrong']}/{rg['questions'] - rg['correct']} wrong answers"
        )
        print(
            f"  lexical support below {below['threshold']}: {below['correct']} correct, {below['wrong']} wrong answers; AUROC correct vs wrong {rg['support_auroc_correct_vs_wrong']}"
        )
    print("\nLatency per check (mean per call)")
    print("| check | ms |\n|---|---:|")
    print(f"| injection (rules + detector), per text | {inj['ms_per_text']:.2f} |")
    print(f"| refused topic, keywords | {top['ms_keyword']:.3f} |")
    print(
        f"| refused topic, keywords + embedding (one query embedding) | {top['ms_keyword_and_embedding']:.2f} |"
    )
    print(f"| PII redaction, per SQuAD passage | {pii['ms_per_passage']:.3f} |")
    print(
        f"| grounding, lexical, per answer-passage pair | {gr['lexical']['ms_per_pair_cached_embeddings']:.3f} |"
    )
    print(
        f"| grounding, hybrid, answer vs 3 passages, uncached | {gr['ms_hybrid_uncached_3_passages']:.1f} |"
    )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
