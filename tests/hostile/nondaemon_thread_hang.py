# A non-daemon thread never ends: interpreter shutdown waits for it, so the job times out.
import threading, time
threading.Thread(target=lambda: time.sleep(600)).start()
print("main done")
