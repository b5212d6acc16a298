from controlplane.cli.main import app

app(prog_name="chutian")
