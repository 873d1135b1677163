from vlserve.cli import main

main()
