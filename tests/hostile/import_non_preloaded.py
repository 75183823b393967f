# Lazily import stdlib modules the worker did not preload (C extensions included).
import sqlite3, zoneinfo, xml.dom.minidom, email.mime.text, tomllib, csv, ctypes
con = sqlite3.connect(":memory:")
print(con.execute("select 6 * 7").fetchone()[0], xml.dom.minidom.parseString("<a/>").documentElement.tagName)
