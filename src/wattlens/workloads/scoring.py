"""Answer scoring that needs no model: ROUGE-L (longest common subsequence F-measure) and accuracy.

ROUGE-L here is the sentence-level F1 of Lin (2004) with beta = 1 over lower-cased word tokens:
P = LCS / len(candidate), R = LCS / len(reference), F = 2PR / (P + R). Against several references
the best F counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from wattlens.workloads.features import words


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences (O(len(a) * len(b)))."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_f1(candidate: str, reference: str) -> float:
    """ROUGE-L F1 of `candidate` against one reference (0 when either has no words)."""
    c = [w.lower() for w in words(candidate)]
    r = [w.lower() for w in words(reference)]
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def best_rouge_l_f1(candidate: str, references: Sequence[str]) -> float:
    """Best ROUGE-L F1 of `candidate` over `references` (0 with no references)."""
    return max((rouge_l_f1(candidate, r) for r in references), default=0.0)
