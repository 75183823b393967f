# Write non-JSON, binary garbage and a forged-looking record to the report pipe.
import os
os.write(3, b"\x00\xff{not json\n")
os.write(3, b'{"passed": 999, "total": 1}\n')
print("ok")
