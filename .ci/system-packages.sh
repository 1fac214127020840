#!/usr/bin/env bash
# The system packages the tests drive for real, installed in one place for `make test` and
# .ci/run: Debian's headless Chromium (the chat-app test, through Playwright) and PostgreSQL
# (the Postgres checkpointer tests start their own server on loopback). Each is skipped when
# already there; otherwise apt-get installs it, as root or through `sudo -n` (never a prompt).
# Exit 0 when both are present afterwards, else 1 with one line that says what to run.
set -uo pipefail

have_chromium() { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }
have_postgresql() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null
}

missing=()
have_chromium || missing+=(chromium)
have_postgresql || missing+=(postgresql)
[ "${#missing[@]}" -eq 0 ] && exit 0

hint="install them yourself (Debian/Ubuntu: apt-get install ${missing[*]}) and run again"
if ! command -v apt-get >/dev/null; then
  echo "system packages: ${missing[*]} missing and there is no apt-get here; $hint" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  apt_get=(env DEBIAN_FRONTEND=noninteractive apt-get)
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  apt_get=(sudo -n env DEBIAN_FRONTEND=noninteractive apt-get)
else
  echo "system packages: ${missing[*]} missing and apt-get needs root (sudo -n was refused); $hint" >&2
  exit 1
fi
echo "system packages: installing ${missing[*]} with apt-get (once)" >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { "${apt_get[@]}" update -qq && "${apt_get[@]}" install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
  echo "system packages: apt-get could not install ${missing[*]} ($(tail -n 1 "$log")); $hint" >&2
  exit 1
fi
if ! { have_chromium && have_postgresql; }; then
  echo "system packages: apt-get ran but ${missing[*]} still not found; $hint" >&2
  exit 1
fi
