from emotion.cli import main

main()
