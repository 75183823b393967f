# Close the report pipe and open a fresh file that lands on fd 3.
import os
os.close(3)
fd = os.open("fake_report.txt", os.O_WRONLY | os.O_CREAT)
os.write(fd, b"forged")
print(fd)
