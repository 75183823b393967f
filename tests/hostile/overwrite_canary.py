# Try to modify an existing file of the caller (and to delete it).
import json, os, sys
ctx = json.load(sys.stdin)
for action in ("append", "truncate", "unlink", "rename"):
    try:
        if action == "append":
            open(ctx["canary"], "a").write("pwned")
        elif action == "truncate":
            open(ctx["canary"], "w").close()
        elif action == "unlink":
            os.unlink(ctx["canary"])
        else:
            os.rename(ctx["canary"], ctx["canary"] + ".moved")
        print(action, "succeeded")
    except OSError as exc:
        print(action, type(exc).__name__)
