"""Published accuracies of binary networks, per dataset, to hold a study's front against.

They are drawn on the Pareto view as horizontal lines: a paper gives an accuracy, never a
latency on bnnx's kernels, so a reference has no x. Only 1-bit weight and activation results
(first and last layers aside, as each paper says) on the full training set are listed;
sources are in each entry. No result is known for `digits` (scikit-learn's 8x8 digits): it gets
none rather than a borrowed one. (Also in the team's notes: ../shared/anchors.md, "Published
accuracy anchors".)
"""

from __future__ import annotations

from dataclasses import dataclass

BINARYNET = ("Courbariaux, Hubara, Soudry, El-Yaniv, Bengio 2016: Binarized Neural Networks "
             "(arXiv:1602.02830)", "https://arxiv.org/abs/1602.02830")
IRNET = ("Qin et al., CVPR 2020: Forward and Backward Information Retention for Accurate Binary "
         "Neural Networks (IR-Net, arXiv:1909.10788)", "https://arxiv.org/abs/1909.10788")
LARQ_MNIST = ("Larq documentation: Introduction to BNNs with Larq (MNIST tutorial)",
              "https://docs.larq.dev/larq/tutorials/mnist/")


@dataclass(frozen=True)
class Reference:
    """One published test accuracy: what network, how accurate, where it is published."""

    label: str
    accuracy: float  # a fraction, like the study's accuracies
    note: str  # what exactly was measured
    source: str
    url: str


REFERENCES: dict[str, tuple[Reference, ...]] = {
    "mnist": (
        Reference("BinaryNet MLP", 0.9904, "permutation-invariant MLP, 0.96% test error",
                  *BINARYNET),
        Reference("Larq binary CNN", 0.976, "small binary CNN after 6 epochs", *LARQ_MNIST),
    ),
    "cifar10": (
        Reference("BinaryNet", 0.886, "VGG-like ConvNet, 11.40% test error", *BINARYNET),
        Reference("IR-Net ResNet-20", 0.865, "1-bit weights and activations", *IRNET),
        Reference("IR-Net VGG-Small", 0.904, "1-bit weights and activations", *IRNET),
        Reference("IR-Net ResNet-18", 0.915, "1-bit weights and activations", *IRNET),
    ),
}


def references_for(dataset: str | None) -> list[Reference]:
    """The published results for `dataset` (a search.datasets name); [] where none is known."""
    return list(REFERENCES.get(dataset or "", ()))
