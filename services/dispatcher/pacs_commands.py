"""`dispatch pacs upload`: DICOM radiographs (and SEGs) into a PACS, the stack's own by default, with a link to
each study in the stack's viewer (docs/viewer.md)."""

from __future__ import annotations

from pathlib import Path

import click

from services.dispatcher import options
from services.dispatcher.follow import emit_json


@click.group(invoke_without_command=True)
@options.as_json
@click.pass_context
def pacs(ctx: click.Context, as_json: bool) -> None:
    """The stack's own PACS (`make up PACS=1`: Orthanc, with OHIF as its viewer): where it and its viewer
    answer; `dispatch pacs upload` puts DICOM files into it."""
    if ctx.invoked_subcommand is not None:
        return
    from shared.settings import get_settings

    own = get_settings().own_pacs
    if as_json:
        emit_json({"pacs": own[0], "viewer": own[1]} if own else {"pacs": None, "viewer": None})
    elif own:
        click.echo(f"PACS (DICOMweb): {own[0]}\nviewer: {own[1]}")
    else:
        click.echo("the stack runs no PACS of its own: `make up PACS=1` starts Orthanc and OHIF (docs/viewer.md)")


@pacs.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--pacs", "pacs_url", help="A PACS's DICOMweb URL; default: the stack's own (make up PACS=1).")
@options.as_json
def upload(source: Path, pacs_url: str | None, as_json: bool) -> None:
    """Store SOURCE's DICOM files (a file, or a folder and its subfolders) in the PACS. Their patient data go
    to the PACS, where they belong, and nowhere else: what is printed is counts and links that name no
    patient (a study's UIDs stay behind the viewer's login)."""
    from shared.dicomweb import checked_url, upload
    from shared.settings import get_settings
    from shared.viewer_links import viewer_link

    settings = get_settings()
    if pacs_url is None:
        if settings.own_pacs is None:
            raise click.UsageError("the stack runs no PACS of its own (make up PACS=1); or name one with --pacs URL")
        pacs_url = settings.own_pacs[0]
    url = checked_url(pacs_url)
    files = sorted(path for path in source.rglob("*") if path.is_file()) if source.is_dir() else [source.resolve()]
    if not files:
        raise click.BadParameter(f"{source} holds no file", param_hint="SOURCE")
    studies = upload(settings, url, files)
    links = [viewer_link(settings, url, study, segs[0] if segs else None) for study, segs in studies.items()]
    shown = [link for link in links if link]
    if as_json:
        emit_json({"pacs": url, "instances": len(files), "studies": len(studies), "viewer": shown})
        return
    click.echo(f"{len(files)} file(s) of {len(studies)} study(ies) stored in the PACS at {url}")
    for link in shown:
        click.echo(f"viewer: {link}")
