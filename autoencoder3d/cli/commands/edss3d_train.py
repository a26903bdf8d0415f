"""Train the EDSS3D segmentation network on the clusters you chose.

Reads model/ and clus-center/kmeans.pickle of a finished 'autoencoder3d train'
run in --out, decodes every subvolume of DATA (decoded/decoded.pickle), labels
the subvolumes of the selected clusters (voxels more than --iso standard deviations denser than the mean;
by default Otsu's threshold of their decoded densities, printed and recorded), draws
as many unlabelled subvolumes as background, and trains the published network
(Adam 0.001, cross-entropy, batch 128, validation 0.1, early stopping patience
20). An interrupted run resumes; a finished one is reused unless --retrain (refused when
the run was clustered again since, so that its clusters hold other subvolumes).

Writes, in --out RUN_DIR:
  decoded/decoded.pickle             uuid -> decoded subvolume (the labels' source; not for a data set store)
  model-seg/model-seg.keras          the trained EDSS3D network
  model-seg/history.csv              loss and validation loss per epoch
  model-seg/loss.png                 the same, plotted
  model-seg/seg.json                 selection, iso and the threshold used, seed, voxels per class, timings

Example:
  edss3d train data.pickle --out run1 --select 1=3,21,28 --select 2=15,25 --seed 1
  edss3d train data.pickle --out run1 --selection chosen.json --class-balanced
"""

from __future__ import annotations

import argparse
import sys

from ..common import add_out, add_seed, fraction, non_negative_int, positive_float, positive_int

RULES = {"otsu": "Otsu's threshold", "published": "the published rule", "given": "--iso"}


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="what the run clustered: the subvolume pickle (published format) or the data set store "
                             "(read batch by batch; only the labelled subvolumes are decoded, and no decoded/decoded.pickle is written)")
    add_out(parser, help="the 'autoencoder3d train' run folder; decoded/ and model-seg/ are written there (default: current folder)")
    parser.add_argument("--select", action="append", default=[], metavar="LABEL=C1,C2,...", help="give the clusters C1, C2, ... segmentation label LABEL (1, "
                                                                                                 "2, ...; 0 is the background); repeat per label")
    parser.add_argument("--selection", metavar="FILE.json", help='JSON file label -> cluster ids, e.g. {"1": [3, 21, 28], "2": [15, 25]}')
    parser.add_argument("--iso", type=iso_value, default="auto", help="a voxel of a labelled subvolume gets its label where the decoded density is more than "
                                                                      "ISO standard deviations "
                             "of the data denser than their mean; 'auto' (default): Otsu's threshold of the decoded subvolumes of the selected clusters "
                             "(the published -decoded > 0.5 for a run trained with --published)")
    parser.add_argument("--class-balanced", action="store_true", help="weight each voxel by the published per-class weight (total target entries / voxels of "
                                                                      "its class)")
    parser.add_argument("--epochs", type=positive_int, default=10000, help="maximum epochs (default 10000, as published; early stopping ends sooner)")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="batch size (default 128)")
    parser.add_argument("--patience", type=non_negative_int, default=20, help="early stopping: epochs without validation improvement (default 20)")
    parser.add_argument("--learning-rate", type=positive_float, default=0.001, help="Adam learning rate (default 0.001)")
    parser.add_argument("--validation-split", type=fraction, default=0.1, help="fraction of patches, from the end, held out for validation (default 0.1)")
    add_seed(parser, recorded_in="model-seg/seg.json")
    parser.add_argument("--retrain", action="store_true", help="ignore a saved model and checkpoints in model-seg/ and train from scratch")


def iso_value(text: str) -> str | float:
    import argparse

    from ...edss3d.labels import parse_iso
    from ...errors import InputError

    try:
        return parse_iso(text)
    except InputError:
        raise argparse.ArgumentTypeError(f"expected auto or a number of standard deviations, got {text!r}") from None


def selection_from_args(args: argparse.Namespace) -> dict[int, list[int]]:
    from ...edss3d.labels import load_selection, parse_select
    from ...errors import InputError

    if args.select and args.selection:
        raise InputError("give either --select or --selection, not both")
    if args.selection:
        return load_selection(args.selection)
    if not args.select:
        raise InputError("no clusters selected: give --select LABEL=CLUSTER,... (e.g. --select 1=3,21,28) or --selection FILE.json")
    return parse_select(args.select)


def main(args: argparse.Namespace) -> int:
    selection = selection_from_args(args)
    from ...edss3d.jobs import run_seg_train

    record = run_seg_train(
        args.data, args.out, selection, iso=args.iso, class_balanced=args.class_balanced, epochs=args.epochs,
        batch_size=args.batch_size, patience=args.patience, validation_split=args.validation_split,
        learning_rate=args.learning_rate, seed=args.seed, retrain=args.retrain,
        verbose=0 if args.quiet else (1 if sys.stdout.isatty() else 2),
        source=args.selection or "--select",
    )
    if record.get("reused_saved_model"):
        print(f"EDSS3D model already trained in {args.out}/model-seg (pass --retrain to train again)")
    else:
        training = record["training"]
        print(
            f"trained EDSS3D on {record['n_labelled']} labelled and {record['n_background']} background subvolumes "
            f"(labels where the decoded density is {record['iso_threshold']:.3g} standard deviations denser than the mean, "
            f"{RULES[record['iso_rule']]}), {training['epochs_total']} epochs, final training loss {training['final_train_loss']:.4f}"
        )
    return 0
