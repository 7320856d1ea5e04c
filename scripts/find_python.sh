#!/bin/sh
# Print the path of a Python >= 3.12 interpreter: $PYTHON if set, then python3.12/python3.13/python3
# on PATH, then pyenv's installed versions. Exits 1 with a message when none is found.
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }
for c in "${PYTHON:-}" python3.12 python3.13 python3; do
  [ -n "$c" ] || continue
  p=$(command -v "$c" 2>/dev/null) || continue
  if ok "$p"; then echo "$p"; exit 0; fi
done
root=${PYENV_ROOT:-$HOME/.pyenv}
for d in $(ls -d "$root"/versions/3.1[2-9]* 2>/dev/null | sort -V); do
  if ok "$d/bin/python"; then echo "$d/bin/python"; exit 0; fi
done
echo "no Python >= 3.12 found: install one (e.g. 'pyenv install 3.12') or set PYTHON=/path/to/python3.12" >&2
exit 1
