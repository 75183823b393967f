# Read /root, the repo, the caller's cwd and a hidden data directory.
import json, os, sys
ctx = json.load(sys.stdin)
seen = {}
for path in ctx["read_dirs"]:
    try:
        seen[path] = sorted(os.listdir(path))
    except OSError as exc:
        seen[path] = type(exc).__name__
for path in ctx["read_files"]:
    try:
        seen[path] = open(path).read()[:100]
    except OSError as exc:
        seen[path] = type(exc).__name__
print(json.dumps(seen, sort_keys=True))
