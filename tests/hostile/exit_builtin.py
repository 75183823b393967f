print("exiting")
exit(0)
