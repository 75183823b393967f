# Try to write outside the job directory: /tmp, the caller's cwd, the repo, /root, /etc.
import json, os, sys
ctx = json.load(sys.stdin)
results = {}
for path in ctx["write_targets"]:
    try:
        with open(path, "w") as f:
            f.write("pwned")
        results[path] = "written"
    except OSError as exc:
        results[path] = type(exc).__name__
print(json.dumps(results, sort_keys=True))
