from logmetrics.cli import main

main()
