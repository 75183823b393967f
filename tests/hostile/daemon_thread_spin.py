# A daemon thread spins forever; the main thread finishes normally.
import threading
threading.Thread(target=lambda: [None for _ in iter(int, 1)], daemon=True).start()
print("main done")
