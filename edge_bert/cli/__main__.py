"""``python -m edge_bert.cli``: how transports start the runner on a device."""

from edge_bert.cli.main import main

main()
