"""``setpoint setup`` and ``setpoint ingest``: provision the parts, write passages, say how it went."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from setpoint.cli.options import sample_corpus, settings_from
from setpoint.cli.output import print_report

__all__ = [
    "EXIT_CODES_HELP",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_SKIPPED",
    "EXIT_USAGE",
    "ingest_exit_code",
    "run_ingest",
    "run_setup",
]

EXIT_OK = 0
#: Some passages were not written (Weaviate refused them, or the write could not finish).
EXIT_FAILED = 1
#: A usage or configuration error (every verb): nothing was done.
EXIT_USAGE = 2
#: Every usable passage was written; some input lines were unusable and skipped.
EXIT_SKIPPED = 3

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}    done: every passage written (or already stored)
  {EXIT_SKIPPED}    done, but some input lines were skipped (bad JSON, no id or text, ...);
       the good lines are stored, each skipped line is named on stderr
  {EXIT_FAILED}    failed: some passages were not written (Weaviate refused them or the
       write could not finish); run the same command again to retry them
  {EXIT_USAGE}    usage or configuration error: nothing was done
  130  interrupted: run the same command again to finish"""


def ingest_exit_code(failed: int, skipped: int) -> int:
    """The exit code of an ingest that ended with ``failed`` passages and ``skipped`` lines.

    Example:
        >>> ingest_exit_code(0, 0), ingest_exit_code(0, 90), ingest_exit_code(2, 90)
        (0, 3, 1)
    """
    if failed:
        return EXIT_FAILED
    return EXIT_SKIPPED if skipped else EXIT_OK


def run_setup(args: argparse.Namespace) -> int:
    """Convert the model, locate the embedder, build weaviate-server (idempotent)."""
    from setpoint.adapters.model.provisioning import provision_all

    started = time.perf_counter()
    provision_all(settings_from(args))
    print(f"setup: done in {time.perf_counter() - started:.1f} s")
    return EXIT_OK


def _reembed(args: argparse.Namespace) -> int:
    """``setpoint ingest --reembed FOLDER``: fill that embedder's vector, searches untouched."""
    from setpoint.adapters.model.embed_eval import load_sentence_transformer
    from setpoint.adapters.model.embedder import Embedder
    from setpoint.adapters.weaviate.reembed import reembed
    from setpoint.adapters.weaviate.store import WeaviateStore

    folder = Path(args.reembed).expanduser()
    load_sentence_transformer(folder)  # a bad folder: one line now, not after connecting
    settings = settings_from(args)
    # The same backend, export cache and threads as every other embedder of these settings.
    embedder = Embedder.from_settings(settings.replace(embedder_dir=folder))
    with WeaviateStore.from_settings(settings) as store:
        report = reembed(store, embedder, batch_size=args.batch_size, progress=not args.quiet)
    print(f"ingest: re-embedded {report.summary()}")
    if not report.failed:
        print(f"ingest: searches use it once SETPOINT_EMBEDDER_DIR={folder}")
    return EXIT_FAILED if report.failed else EXIT_OK


def run_ingest(args: argparse.Namespace) -> int:
    """Ingest a file or folder (or delete passages); the exit code says how it went."""
    from setpoint.adapters.domain.chunking import ChunkPolicy
    from setpoint.api import Setpoint
    from setpoint.errors import InputError

    if args.delete and (args.file or args.sync):
        raise InputError("--delete takes passage ids, not a file or folder")
    if args.sync and args.file:
        raise InputError("give either FILE or --sync FOLDER, not both")
    if args.source and not args.delete:
        raise InputError("--source goes with --delete")
    if args.reembed:
        if args.delete or args.file or args.sync or args.recreate:
            raise InputError("--reembed rewrites what is stored; give it no file or other action")
        return _reembed(args)
    chunking = ChunkPolicy(max_words=args.chunk_words, overlap_words=args.chunk_overlap)
    path = Path(args.sync or args.file) if (args.sync or args.file) else sample_corpus()
    with Setpoint(settings_from(args)) as sp:
        if args.recreate:
            sp.resources.store().recreate_collection()
        try:
            if args.delete:
                report = sp.delete_passages(args.delete, source=args.source)
                missing = len(set(args.delete) - {pid for _, pid in report.deleted})
                print(f"ingest: deleted {len(report.deleted)} passages, {missing} ids not found")
                return EXIT_OK
            report = sp.ingest(
                path,
                progress=not args.quiet,
                sync=bool(args.sync),
                chunking=chunking,
                batch_size=args.batch_size,
            )
        except KeyboardInterrupt:
            print(
                "setpoint: ingest interrupted; run the same command again to finish "
                "(stored passages are skipped, none is written twice)",
                file=sys.stderr,
            )
            return 130
    return ingest_exit_code(*print_report(report, path))
