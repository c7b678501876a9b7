from outloop_cli.main import entry

entry()
