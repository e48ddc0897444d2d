"""Mean ± sample std (per run) of the rows of several runs' report.json: one `gendistill compress` run per seed of a task
shape. Prints a markdown table: test accuracy % and macro-F1 %, the shipped int8 bundle beside the PyTorch student.

    python benchmarks/shapes/report_table.py benchmarks/shapes/rt-uneven-20k/seed*/report.json
"""

import json
import sys

from compare_priors import cell

from gendistill.compressor.evaluate import bundle_test_accuracy


def main(paths: list[str]) -> None:
    reports = [json.load(open(path)) for path in paths]
    student = [r["student"] for r in reports]
    rows = {
        "teacher": ([r["teacher"]["test_accuracy"] for r in reports], [r["teacher"].get("test_macro_f1") for r in reports]),
        "student, generation-distillation (PyTorch)": ([s["test_accuracy"] for s in student], [s.get("test_macro_f1") for s in student]),
        "shipped bundle (int8 when it passed its checks)": ([bundle_test_accuracy(r.get("bundle") or {}) for r in reports], []),
        "student, labeled data only": ([r["student_labeled_only"]["test_accuracy"] for r in reports],
                                       [r["student_labeled_only"].get("test_macro_f1") for r in reports]),
        "TF-IDF + linear SVM": ([r["tfidf_svm"]["test_accuracy"] for r in reports], [r["tfidf_svm"].get("test_macro_f1") for r in reports]),
        "always the most frequent test class": ([r["majority_class_test_accuracy"] for r in reports], []),
    }
    shipped = [r.get("shipped", {}).get("student", "?") for r in reports]
    print(f"{len(reports)} runs: {', '.join(paths)}\n")
    print("| model | test accuracy % | macro-F1 % |\n|---|---|---|")
    for name, (acc, f1) in rows.items():
        print(f"| {name} | {cell(acc)} | {cell(f1)} |")
    print(f"\nShipped: {' / '.join(shipped)}.")


if __name__ == "__main__":
    main(sys.argv[1:])
