"""An upgrade keeps the data: a database filled by the previous release migrates and reads back.

The previous release's migration state is pinned below (its leaf migrations; the app ``outbound``
is today's ``messages`` package, whose label did not change). The test migrates every app back to
exactly that state, writes one row into every table of every project model through the
*historical* models of that state, migrates forward to the latest migrations and reads each row
back through the current models: every field the row still has keeps its value. The database is
left migrated to the latest state for the tests that follow.
"""

import datetime
import decimal
import uuid
from pathlib import Path

import pytest
from django.apps import apps as current_apps
from django.db import connection, models
from django.db.migrations.executor import MigrationExecutor

ROOT = Path(__file__).resolve().parents[2]

# The leaf migrations of the last release before the layout move.
PREVIOUS_RELEASE = {
    "bounces": "0003_shared_dumps",
    "domains": "0002_domain_periodic_checks",
    "outbound": "0005_message_queries",
    "servers": "0003_smtp_sending_limits",
    "smtpgw": "0001_auth_failure_count",
    "streams": "0002_unsubscribe_handling_type",
    "webhooks": "0001_initial",
}

# Models of the previous release that a later migration deletes on purpose (their rows go with
# them); any other model must still be there, every row intact.
REMOVED = {
    # webhooks 0002: the webhook outbox is each event's own mark, not an id cursor.
    "webhooks.webhooksweepcursor",
}

WHEN = datetime.datetime(2026, 11, 30, 12, 34, 56, 789000, tzinfo=datetime.UTC)


def project_labels() -> set[str]:
    """The labels of the project's own apps (those whose code lives in this repository)."""
    return {
        config.label
        for config in current_apps.get_app_configs()
        if (ROOT / config.name.split(".")[0] / "__init__.py").exists()
    }


def previous_release_targets(executor: MigrationExecutor) -> list[tuple[str, str | None]]:
    """Every app at the previous release: the project's pinned leaves, a project app the release
    did not have unmigrated, and third-party apps (Django's own) at their leaves."""
    graph = executor.loader.graph
    labels = project_labels()
    targets = [(label, name) for label, name in PREVIOUS_RELEASE.items()]
    for label in sorted({label for label, _ in graph.leaf_nodes()} - set(PREVIOUS_RELEASE)):
        if label in labels:
            targets.append((label, None))
        else:
            targets.extend(node for node in graph.leaf_nodes() if node[0] == label)
    return targets


def sample_value(field: models.Field, model_name: str):
    """A value of the field's type unlike its default, so that a lost value would show."""
    if field.choices:
        return list(field.flatchoices)[-1][0]
    if isinstance(field, models.BooleanField):
        return field.default is not True
    if isinstance(field, models.GenericIPAddressField):
        return "192.0.2.7"
    if isinstance(field, models.UUIDField):
        return uuid.uuid4()
    if isinstance(field, models.JSONField):
        default = field.get_default()
        if isinstance(default, list):
            return ["a@example.com", {"Name": "X", "Value": 1}]
        return {"key": "value", "list": [1, 2.5, True, None]}
    if isinstance(field, models.BinaryField):
        return bytes(range(256))
    if isinstance(field, models.DateTimeField):
        return WHEN
    if isinstance(field, models.DateField):
        return WHEN.date()
    if isinstance(field, models.TimeField):
        return WHEN.time()
    if isinstance(field, models.DurationField):
        return datetime.timedelta(seconds=90061, microseconds=5)
    if isinstance(field, models.DecimalField):
        return decimal.Decimal("1.5")
    if isinstance(field, models.FloatField):
        return 2.5
    if isinstance(field, models.SmallIntegerField | models.PositiveSmallIntegerField):
        return 7
    if isinstance(field, models.BigIntegerField):
        return 2**40 + 7
    if isinstance(field, models.IntegerField):
        return 70001
    if isinstance(field, models.CharField | models.TextField):
        text = f"{model_name}.{field.name} é"
        return text[-field.max_length :] if field.max_length else text
    raise AssertionError(
        f"{model_name}.{field.name}: no sample value for {type(field).__name__}; add one here"
    )


class Filler:
    """Writes one row per model through the historical models, creating what it refers to."""

    def __init__(self, state_apps):
        self.apps = state_apps
        self.rows: dict[str, models.Model] = {}  # "app_label.model_name" -> the saved row
        self.written: dict[str, dict] = {}  # the explicit values, by the same key
        self.creating: set[str] = set()
        self.deferred: list[tuple[type, str, str]] = []  # model, attname, target's key

    def row(self, model) -> models.Model:
        key = model._meta.label_lower
        if key in self.rows:
            return self.rows[key]
        assert key not in self.creating, f"{key} refers to itself through required foreign keys"
        self.creating.add(key)
        values = {}
        for field in model._meta.concrete_fields:
            if field.primary_key and field.auto_created:
                continue
            if field.is_relation:
                target = field.related_model
                target_key = target._meta.label_lower
                if target_key in self.creating and field.null:
                    self.deferred.append((model, field.attname, target_key))
                    continue
                values[field.attname] = self.row(target).pk
            else:
                values[field.attname] = sample_value(field, key)
        instance = model.objects.create(**values)
        self.creating.discard(key)
        self.rows[key] = instance
        self.written[key] = values
        return instance

    def fill(self, labels: set[str]) -> None:
        for model in self.apps.get_models():
            meta = model._meta
            if meta.app_label in labels and meta.managed and not meta.proxy:
                self.row(model)
        for model, attname, target_key in self.deferred:
            pk = self.rows[target_key].pk
            model.objects.filter(pk=self.rows[model._meta.label_lower].pk).update(**{attname: pk})
        for instance in list(self.rows.values()):
            if instance._meta.app_label not in labels:
                continue
            for field in instance._meta.many_to_many:
                if field.remote_field.through._meta.auto_created:
                    getattr(instance, field.name).set([self.row(field.related_model)])


def stored(instance: models.Model, field: models.Field):
    value = getattr(instance, field.attname)
    return bytes(value) if isinstance(value, memoryview) else value


def snapshot(instance: models.Model) -> dict:
    """The row as read from the database: its column values and its many-to-many links."""
    values = {field.attname: stored(instance, field) for field in instance._meta.concrete_fields}
    for field in instance._meta.many_to_many:
        values[field.name] = sorted(getattr(instance, field.name).values_list("pk", flat=True))
    return values


def table_rows(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_database_of_the_previous_release_upgrades_with_every_row_intact():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    previous = previous_release_targets(executor)
    try:
        executor.migrate(previous)
        # An app the release did not have is left out: project_state takes migrations only.
        old_apps = executor.loader.project_state(
            [node for node in previous if node[1] is not None], at_end=True
        ).apps
        labels = set(PREVIOUS_RELEASE)

        filler = Filler(old_apps)
        filler.fill(labels)
        tables = set()
        before = {}
        for key, instance in filler.rows.items():
            if instance._meta.app_label not in labels:
                continue
            model = type(instance)
            tables.add(model._meta.db_table)
            tables.update(
                field.remote_field.through._meta.db_table for field in model._meta.many_to_many
            )
            before[key] = snapshot(model.objects.get(pk=instance.pk))
            fields = {field.attname: field for field in model._meta.concrete_fields}
            for attname, value in filler.written[key].items():
                field = fields[attname]
                if not (getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)):
                    assert before[key][attname] == value, (key, attname)
        assert set(before) == {
            model._meta.label_lower
            for model in old_apps.get_models()
            if model._meta.app_label in labels and not model._meta.proxy
        }
        empty = sorted(table for table in tables if table_rows(table) == 0)
        assert not empty, f"no row written to {empty}"
    finally:
        executor.loader.build_graph()
        executor.migrate(latest)
        executor.loader.build_graph()

    assert not executor.migration_plan(executor.loader.graph.leaf_nodes())
    current = {model._meta.label_lower for model in current_apps.get_models()}
    assert set(before) - current == REMOVED
    for key, old_values in before.items():
        if key in REMOVED:
            continue
        label, _, name = key.partition(".")
        model = current_apps.get_model(label, name)
        now_values = snapshot(model.objects.get(pk=filler.rows[key].pk))
        kept = {column: now_values[column] for column in old_values if column in now_values}
        assert kept == {column: old_values[column] for column in kept}, key
        assert kept, key
