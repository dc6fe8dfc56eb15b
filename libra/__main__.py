from libra.cli import main

main()
