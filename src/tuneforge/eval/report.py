"""Read lm-eval's results as scores per task, subject category and subject; print tables; compare two runs.

A group whose members are groups (lm-eval's `mmlu`: stem, humanities, social sciences, other) reports those as
its categories. A flat group with a known category list (C-Eval's 52 subjects in STEM, Social Science,
Humanities, Other; CMMLU's 67 in those and China specific) is split into those categories, each the
question-weighted mean of its subjects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Official subject categories of benchmarks whose lm-eval group lists the subjects without them.
# C-Eval: each subject in one category. CMMLU: also "China specific", which overlaps the other four.
CEVAL_CATEGORIES = {
    "STEM": "computer_network operating_system computer_architecture college_programming college_physics "
    "college_chemistry advanced_mathematics probability_and_statistics discrete_mathematics electrical_engineer "
    "metrology_engineer high_school_mathematics high_school_physics high_school_chemistry high_school_biology "
    "middle_school_mathematics middle_school_biology middle_school_physics middle_school_chemistry "
    "veterinary_medicine",
    "Social Science": "college_economics business_administration marxism mao_zedong_thought education_science "
    "teacher_qualification high_school_politics high_school_geography middle_school_politics "
    "middle_school_geography",
    "Humanities": "modern_chinese_history ideological_and_moral_cultivation logic law "
    "chinese_language_and_literature art_studies professional_tour_guide legal_professional high_school_chinese "
    "high_school_history middle_school_history",
    "Other": "civil_servant sports_science plant_protection basic_medicine clinical_medicine "
    "urban_and_rural_planner accountant fire_engineer environmental_impact_assessment_engineer tax_accountant "
    "physician",
}
CMMLU_CATEGORIES = {
    "STEM": "anatomy astronomy college_actuarial_science college_engineering_hydrology college_mathematics "
    "college_medical_statistics computer_science conceptual_physics electrical_engineering elementary_mathematics "
    "genetics high_school_biology high_school_chemistry high_school_mathematics high_school_physics "
    "machine_learning virology",
    "Humanities": "arts chinese_history chinese_literature college_law global_facts international_law jurisprudence "
    "logical marxist_theory philosophy professional_law world_history world_religions",
    "Social Science": "ancient_chinese business_ethics chinese_civil_service_exam chinese_food_culture "
    "chinese_foreign_policy chinese_teacher_qualification college_education economics education elementary_chinese "
    "ethnology high_school_geography high_school_politics journalism management marketing modern_chinese "
    "professional_accounting professional_psychology public_relations security_study sociology",
    "Other": "agronomy chinese_driving_rule clinical_knowledge college_medicine computer_security "
    "construction_project_management elementary_commonsense elementary_information_and_technology food_science "
    "human_sexuality legal_and_moral_basis nutrition professional_medicine sports_science "
    "traditional_chinese_medicine",
    "China specific": "ancient_chinese chinese_civil_service_exam chinese_driving_rule chinese_food_culture "
    "chinese_foreign_policy chinese_history chinese_literature chinese_teacher_qualification "
    "construction_project_management elementary_chinese elementary_commonsense ethnology high_school_politics "
    "modern_chinese traditional_chinese_medicine",
}
CATEGORY_TABLES = [
    {category: subjects.split() for category, subjects in table.items()}
    for table in (CEVAL_CATEGORIES, CMMLU_CATEGORIES)
]


@dataclass
class Score:
    """A mean score (0..1) over `n` questions."""

    value: float
    n: int


@dataclass
class TaskScores:
    """One requested task or group: its overall score, per category and per subject."""

    name: str
    metric: str
    overall: Score
    categories: dict[str, Score] = field(default_factory=dict)
    subjects: dict[str, Score] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, Score]]:
        """(label, score) rows for a table: categories, then the overall score."""
        return [*self.categories.items(), ("overall", self.overall)]


def primary_metric(entry: dict[str, Any]) -> str:
    """`acc,none` when the task reports accuracy, else its first numeric metric."""
    if "acc,none" in entry:
        return "acc,none"
    for key, value in entry.items():
        if "," in key and "stderr" not in key and isinstance(value, (int, float)):
            return key
    raise KeyError(f"no metric in {sorted(entry)}")


def _leaves(out: dict[str, Any], name: str) -> list[str]:
    children = out.get("group_subtasks", {}).get(name)
    if children is None:
        return [name]
    return [leaf for child in children for leaf in _leaves(out, child)]


def _size(out: dict[str, Any], name: str) -> int:
    counts = out.get("n-samples", {})
    return sum(int(counts.get(leaf, {}).get("effective", 0)) for leaf in _leaves(out, name))


def _weighted(scores: list[Score]) -> Score:
    n = sum(s.n for s in scores)
    return Score(math.fsum(s.value * s.n for s in scores) / n if n else 0.0, n)


def _label(out: dict[str, Any], name: str) -> str:
    alias = str(out["results"].get(name, {}).get("alias", name))
    return alias.strip().lstrip("-").strip() or name


def task_scores(out: dict[str, Any], name: str) -> TaskScores:
    """Scores of the requested task or group `name` from `simple_evaluate`'s output."""
    results = out["results"]
    metric = primary_metric(results[name]) if name in results else primary_metric(results[_leaves(out, name)[0]])
    leaves = _leaves(out, name)
    subjects = {_label(out, leaf): Score(float(results[leaf][metric]), _size(out, leaf)) for leaf in leaves}
    overall = _weighted([Score(float(results[leaf][metric]), _size(out, leaf)) for leaf in leaves])
    children = out.get("group_subtasks", {}).get(name, [])
    groups = [c for c in children if c in out.get("group_subtasks", {})]
    categories: dict[str, Score] = {}
    if groups:
        for child in groups:
            categories[_label(out, child)] = _weighted(
                [Score(float(results[leaf][metric]), _size(out, leaf)) for leaf in _leaves(out, child)]
            )
    elif children:
        categories = _table_categories(children, [Score(float(results[c][metric]), _size(out, c)) for c in children])
    return TaskScores(name, metric.split(",")[0], overall, categories, subjects if len(leaves) > 1 else {})


def _table_categories(children: list[str], scores: list[Score]) -> dict[str, Score]:
    """Categories of the first known table naming every subject task in `children` (none when no table does)."""
    for table in CATEGORY_TABLES:
        known = {s for subjects in table.values() for s in subjects}
        subjects = [_subject(task, known) for task in children]
        if all(subjects):
            return {
                category: _weighted([score for s, score in zip(subjects, scores, strict=True) if s in members])
                for category, members in table.items()
                if any(s in members for s in subjects)
            }
    return {}


def _subject(task: str, known: set[str]) -> str | None:
    """The known subject a task name ends with (`ceval-valid_law` -> `law`; the longest match wins)."""
    matches = [s for s in known if task == s or task.endswith("_" + s)]
    return max(matches, key=len) if matches else None


def to_json(scores: list[TaskScores]) -> list[dict[str, Any]]:
    """Plain dicts for results.json."""

    def one(score: Score) -> dict[str, Any]:
        return {"score": round(score.value, 6), "questions": score.n}

    return [
        {
            "task": t.name,
            "metric": t.metric,
            "overall": one(t.overall),
            "categories": {k: one(v) for k, v in t.categories.items()},
            "subjects": {k: one(v) for k, v in t.subjects.items()},
        }
        for t in scores
    ]


def deltas(base: list[TaskScores], tuned: list[TaskScores]) -> list[dict[str, Any]]:
    """Per task and category: base score, tuned score and their difference (tuned - base)."""
    rows = []
    for b, t in zip(base, tuned, strict=True):
        for (label, bs), (_, ts) in zip(b.rows(), t.rows(), strict=True):
            rows.append(
                {"task": t.name, "category": label, "base": bs.value, "tuned": ts.value, "delta": ts.value - bs.value}
            )
    return rows


def render(scores: list[TaskScores], heading: str, base: list[TaskScores] | None = None) -> str:
    """Tables (one per task) as text: category, questions, score in percent, and the delta when comparing."""
    import io

    from rich.console import Console
    from rich.table import Table

    console = Console(file=io.StringIO(), record=True, width=100, force_terminal=False)
    console.print(heading)
    for index, task in enumerate(scores):
        table = Table(title=f"{task.name} ({task.metric}, %)")
        table.add_column("category")
        table.add_column("questions", justify="right")
        if base is not None:
            table.add_column("base", justify="right")
        table.add_column("score", justify="right")
        if base is not None:
            table.add_column("delta", justify="right")
        reference = dict(base[index].rows()) if base is not None else {}
        for label, score in task.rows():
            cells = [label, str(score.n)]
            if base is not None:
                cells.append(f"{100 * reference[label].value:.2f}")
            cells.append(f"{100 * score.value:.2f}")
            if base is not None:
                cells.append(f"{100 * (score.value - reference[label].value):+.2f}")
            table.add_row(*cells)
        console.print(table)
    return console.export_text()
