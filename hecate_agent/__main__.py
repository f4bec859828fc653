from hecate_agent.cli import main

main()
