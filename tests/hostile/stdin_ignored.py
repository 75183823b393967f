# A large stdin the program never reads must not stall the job.
print("not reading")
