"""MkDocs hook: serve each model card as a page of the site without copying it.

A model card lives next to its weights (``vislab/<lab>/pretrained/README.md``, shipped in the wheel); this hook
adds it to the site as ``<lab>/model-card.md`` (with the pictures beside it), so it is written once and the
documentation links to it. Listed in ``mkdocs.yml`` under ``hooks:``.
"""

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def on_files(files: Files, config) -> Files:
    for card in sorted(ROOT.glob("vislab/*/pretrained/README.md")):
        lab = card.parent.parent.name
        files.append(File.generated(config, f"{lab}/model-card.md", abs_src_path=str(card)))
        for picture in sorted(card.parent.glob("*.png")):
            files.append(File.generated(config, f"{lab}/{picture.name}", abs_src_path=str(picture)))
    return files
