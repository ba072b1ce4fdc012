print("mope")
