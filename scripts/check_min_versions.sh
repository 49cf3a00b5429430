#!/usr/bin/env bash
# Run the core and correlation tests with every dependency at the lower bound pyproject.toml claims.
#   scripts/check_min_versions.sh [pytest args...]      (network to PyPI; a few minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MIN_VENV:-/tmp/corral-min-venv}
rm -rf "$venv"
python3 -m venv "$venv"
python3 - > "$venv/lower.txt" <<'PY'
import re, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = p["dependencies"] + p["optional-dependencies"]["correlate"]
for r in reqs:
    m = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)", r)
    if m:
        print(f"{m.group(1)}=={m.group(2)}")
PY
cat "$venv/lower.txt"
"$venv/bin/pip" install -q --no-deps -e . 2>&1 | grep -v '^WARNING: Location' || true
"$venv/bin/pip" install -q -c "$venv/lower.txt" -e '.[correlate]' pytest==9.2.0 hypothesis==6.170.15 2>&1 | grep -v '^WARNING: Location' || true
"$venv/bin/pip" freeze | grep -i -f <(cut -d= -f1 "$venv/lower.txt")
if (($# == 0)); then
  set -- tests/integrations/test_integrations_guard.py tests/policy tests/respond tests/events tests/correlate -k "not otel"
fi
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
