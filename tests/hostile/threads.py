import threading
out = []
lock = threading.Lock()

def work(i):
    with lock:
        out.append(i * i)

threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sorted(out))
