"""The ``vlserve`` command line: one module per command group, shared plumbing in :mod:`.common`.

Errors print one clear line on stderr and exit with the code of their row in the error table
(``vlserve --help`` lists them; docs/errors.md explains them).
"""

from __future__ import annotations

import logging

import typer

from vlserve.cli import dense, detect, embed, eval, gateway, index, segment, serve, toyworld, ui
from vlserve.cli.common import exit_codes_text, run

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="vlserve: vision-language retrieval, zero-shot classification and open-vocabulary detection.",
                  epilog=exit_codes_text())
for command in (embed.embed, embed.models, embed.info, embed.classify, detect.detect, segment.segment):
    app.command()(command)
app.command("serve")(serve.serve)
app.command("gateway")(gateway.gateway)
app.command("openapi")(gateway.openapi)
app.command("ui")(ui.ui)
app.add_typer(serve.repo_app, name="repo")
app.add_typer(toyworld.toyworld_app, name="toyworld")
app.add_typer(eval.eval_app, name="eval")
app.add_typer(index.index_app, name="index")
app.add_typer(dense.dense_app, name="dense")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run(app)


__all__ = ["app", "main"]
