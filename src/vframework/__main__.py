from vframework.cli import main

main()
