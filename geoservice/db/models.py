"""The stored schema as SQLAlchemy 2 / GeoAlchemy2 declarative models: a query API for developers.

    with Session(engine(settings)) as session:
        session.scalars(select(BasemapPatch).where(func.ST_Intersects(BasemapPatch.geom, point)))

The migrations in sql/ define the schema; these models describe it (tests/test_models.py compares every table, column,
type, SRID, nullability, key and default with the database the migrations create). The stages themselves write with
COPY and read with hand-written SQL on psycopg2 cursors; nothing here is on their paths. `feature`, `basemap_patch`
and `conflict` are partitioned per load or run: filter features by `version_id` (or join the active version), and
join a run's patches or conflicts with `in_run` (an incremental run reads its chain's partitions: `run_id` is the run
that stored a row, which the runs after it share until one drops it). Geometry columns are in the working CRS: `engine(settings)` sets
their SRID from `working_crs`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger, Boolean, ColumnElement, Computed, DateTime, Double, Engine, ForeignKey, Integer, Text, and_, any_,
    create_engine, or_, text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, foreign, mapped_column, relationship

from geoservice.db.connection import connect_url, database_url
from geoservice.db.read import SCHEMA
from geoservice.settings import Settings

#: the default working CRS's SRID (until engine() or use_working_srid() sets the configured one)
DEFAULT_SRID = int(Settings.model_fields["working_crs"].default.removeprefix("EPSG:"))


class Base(DeclarativeBase):
    """The project's tables, in the schema `geoservice`."""

    type_annotation_map = {
        str: Text(), int: Integer(), float: Double(), bool: Boolean(), datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB(), list[Any]: JSONB(),
    }


def _now() -> Any:
    return mapped_column(server_default=text("now()"))


def _empty(json: bool = False) -> Any:
    """A NOT NULL column defaulting to '' (or '{}'::jsonb)."""
    return mapped_column(server_default=text("'{}'::jsonb" if json else "''"))


def _flag() -> Any:
    return mapped_column(server_default=text("false"))


def _geometry() -> Any:
    return mapped_column(Geometry("MULTIPOLYGON", srid=DEFAULT_SRID, spatial_index=False))


def _partition_id(sequence: str) -> Any:
    """The id of a partitioned table's row: from the table's own sequence, unique across partitions."""
    return mapped_column(BigInteger, primary_key=True, server_default=text(f"nextval('{SCHEMA}.{sequence}'::regclass)"))


def _chain() -> Any:
    """A run's chain: the runs whose stored rows it reads (its own id last)."""
    return mapped_column(ARRAY(BigInteger), server_default=text("'{}'::bigint[]"))


def _schema(partition_by: str | None = None) -> dict[str, Any]:
    return {"schema": SCHEMA, **({"postgresql_partition_by": f"LIST ({partition_by})"} if partition_by else {})}


class SchemaMigration(Base):
    """An applied migration (sql/NNNN_name.sql) and its checksum."""

    __tablename__ = "schema_migrations"
    __table_args__ = _schema()

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str]
    checksum: Mapped[str]
    applied_at: Mapped[datetime] = _now()


class Meta(Base):
    """Key-value facts of the database (the working SRID)."""

    __tablename__ = "meta"
    __table_args__ = _schema()

    key: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[str]


class Layer(Base):
    """A source layer: its kind and its definition (layers/*.yaml) as last loaded."""

    __tablename__ = "layer"
    __table_args__ = _schema()

    name: Mapped[str] = mapped_column(primary_key=True)
    kind: Mapped[str]
    title: Mapped[str]
    description: Mapped[str] = _empty()
    definition: Mapped[dict[str, Any]] = _empty(json=True)
    created_at: Mapped[datetime] = _now()

    versions: Mapped[list[LayerVersion]] = relationship(back_populates="of_layer", order_by="LayerVersion.version")


class LayerVersion(Base):
    """One load of a layer; its features are the `feature` partition with `version_id` = `id`."""

    __tablename__ = "layer_version"
    __table_args__ = _schema()

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    layer: Mapped[str] = mapped_column(ForeignKey(f"{SCHEMA}.layer.name", ondelete="CASCADE"))
    version: Mapped[int]
    source_path: Mapped[str]
    source_checksum: Mapped[str]
    loaded_at: Mapped[datetime] = _now()
    feature_count: Mapped[int] = mapped_column(server_default=text("0"))
    is_active: Mapped[bool] = _flag()
    summary: Mapped[dict[str, Any]] = _empty(json=True)
    revision: Mapped[int] = mapped_column(server_default=text("0"))
    edited_at: Mapped[datetime | None]

    of_layer: Mapped[Layer] = relationship(back_populates="versions")


class Feature(Base):
    """A source feature of a layer version, in the working CRS (partitioned by `version_id`)."""

    __tablename__ = "feature"
    __table_args__ = _schema("version_id")

    version_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = _partition_id("feature_id_seq")
    source_row: Mapped[int]
    source_id: Mapped[str | None]
    name: Mapped[str | None]
    class_code: Mapped[str | None]
    original_code: Mapped[str | None]
    status: Mapped[str] = mapped_column(server_default=text("'kept'"))
    attributes: Mapped[dict[str, Any]] = _empty(json=True)
    geom: Mapped[WKBElement] = _geometry()
    area_m2: Mapped[float | None] = mapped_column(Computed("ST_Area(geom)", persisted=True))
    revision: Mapped[int] = mapped_column(server_default=text("0"))

    version: Mapped[LayerVersion] = relationship(primaryjoin=lambda: foreign(Feature.version_id) == LayerVersion.id,
                                                 viewonly=True)


class FeatureHistory(Base):
    """A row a write superseded or deleted, as it was stored, with the revision that ended it (append-only)."""

    __tablename__ = "feature_history"
    __table_args__ = _schema()

    version_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source_row: Mapped[int]
    source_id: Mapped[str | None]
    name: Mapped[str | None]
    class_code: Mapped[str | None]
    original_code: Mapped[str | None]
    status: Mapped[str]
    attributes: Mapped[dict[str, Any]]
    geom: Mapped[WKBElement] = _geometry()
    area_m2: Mapped[float]
    revision: Mapped[int] = mapped_column(primary_key=True)
    ended_revision: Mapped[int]


class LandClass(Base):
    """A 用地用海分类 (2023) class."""

    __tablename__ = "land_class"
    __table_args__ = _schema()

    code: Mapped[str] = mapped_column(primary_key=True)
    name_zh: Mapped[str]
    name_en: Mapped[str]
    construction: Mapped[bool]


class IntegrationRun(Base):
    """One base-map build: the layer versions it read, its parameters and summary; one run is current."""

    __tablename__ = "integration_run"
    __table_args__ = _schema()

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    started_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None]
    layer_versions: Mapped[dict[str, Any]]
    parameters: Mapped[dict[str, Any]] = _empty(json=True)
    summary: Mapped[dict[str, Any]] = _empty(json=True)
    is_current: Mapped[bool] = _flag()
    base_run_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.integration_run.id"))
    chain: Mapped[list[int]] = _chain()


class BasemapPatch(Base):
    """A base-map (一张图) patch with both plans' codes, its district and protection lines (partitioned by `run_id`)."""

    __tablename__ = "basemap_patch"
    __table_args__ = _schema("run_id")

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = _partition_id("basemap_patch_id_seq")
    land_feature_id: Mapped[int | None] = mapped_column(BigInteger)
    land_code: Mapped[str | None]
    plan_feature_id: Mapped[int | None] = mapped_column(BigInteger)
    plan_code: Mapped[str | None]
    difference: Mapped[str]
    district_code: Mapped[str | None]
    district_name: Mapped[str | None]
    red_line_m2: Mapped[float] = mapped_column(server_default=text("0"))
    farmland_m2: Mapped[float] = mapped_column(server_default=text("0"))
    dev_boundary_m2: Mapped[float] = mapped_column(server_default=text("0"))
    in_red_line: Mapped[bool] = _flag()
    in_farmland: Mapped[bool] = _flag()
    in_dev_boundary: Mapped[bool] = _flag()
    area_m2: Mapped[float]
    geom: Mapped[WKBElement] = _geometry()
    piece_m2: Mapped[float | None]
    until_run: Mapped[int | None] = mapped_column(BigInteger)

    #: the run that stored the patch (the runs of its chain after it share it: `in_run`)
    run: Mapped[IntegrationRun] = relationship(primaryjoin=lambda: foreign(BasemapPatch.run_id) == IntegrationRun.id,
                                               viewonly=True)


class DetectionRun(Base):
    """One conflict detection: its base map, layer versions and rules; one run is current."""

    __tablename__ = "detection_run"
    __table_args__ = _schema()

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    started_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None]
    integration_run_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.integration_run.id"))
    layer_versions: Mapped[dict[str, Any]]
    rules_checksum: Mapped[str]
    rules: Mapped[list[Any]]
    summary: Mapped[dict[str, Any]] = _empty(json=True)
    is_current: Mapped[bool] = _flag()
    base_run_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.detection_run.id"))
    chain: Mapped[list[int]] = _chain()

    integration_run: Mapped[IntegrationRun | None] = relationship(foreign_keys=[integration_run_id])


class Conflict(Base):
    """A conflict patch found by a rule in a detection run (partitioned by `run_id`); `status` copies its case's."""

    __tablename__ = "conflict"
    __table_args__ = _schema("run_id")

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = _partition_id("conflict_id_seq")
    rule_id: Mapped[str]
    rule_type: Mapped[str]
    severity: Mapped[str]
    area_m2: Mapped[float]
    layer_a: Mapped[str]
    feature_a: Mapped[int] = mapped_column(BigInteger)
    source_id_a: Mapped[str | None]
    code_a: Mapped[str | None]
    layer_b: Mapped[str | None]
    feature_b: Mapped[int | None] = mapped_column(BigInteger)
    source_id_b: Mapped[str | None]
    code_b: Mapped[str | None]
    district_code: Mapped[str | None]
    district_name: Mapped[str | None]
    details: Mapped[dict[str, Any]] = _empty(json=True)
    status: Mapped[str] = mapped_column(server_default=text("'open'"))
    geom: Mapped[WKBElement] = _geometry()
    case_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.conflict_case.id"))
    until_run: Mapped[int | None] = mapped_column(BigInteger)

    #: the run that stored the conflict (the runs of its chain after it share it: `in_run`)
    run: Mapped[DetectionRun] = relationship(primaryjoin=lambda: foreign(Conflict.run_id) == DetectionRun.id, viewonly=True)
    case: Mapped[ConflictCase | None] = relationship(back_populates="conflicts")


class ConflictCase(Base):
    """A conflict followed across detection runs (台账编号): its key, review status and opinion."""

    __tablename__ = "conflict_case"
    __table_args__ = _schema()

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    rule_id: Mapped[str]
    layer_a: Mapped[str]
    key_a: Mapped[str]
    layer_b: Mapped[str] = _empty()
    key_b: Mapped[str] = _empty()
    district_code: Mapped[str] = _empty()
    status: Mapped[str] = mapped_column(server_default=text("'open'"))
    opinion: Mapped[str] = _empty()
    reviewer: Mapped[str | None]
    reviewed_at: Mapped[datetime | None]
    first_run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.detection_run.id"))
    created_at: Mapped[datetime] = _now()

    conflicts: Mapped[list[Conflict]] = relationship(back_populates="case", viewonly=True)
    events: Mapped[list[ConflictCaseEvent]] = relationship(back_populates="case", order_by="ConflictCaseEvent.id",
                                                           viewonly=True)


class DisappearedCase(Base):
    """A case of a rule a detection run evaluated that the run did not find."""

    __tablename__ = "disappeared_case"
    __table_args__ = _schema()

    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.detection_run.id"), primary_key=True)
    case_id: Mapped[int] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.conflict_case.id"), primary_key=True)


class CaseOrigin(Base):
    """Where a changed conflict's case came from: a case of a dropped conflict of the same rule it overlaps (split,
    merged, shrunk, grown, reshaped), recorded by the incremental detection run that linked it."""

    __tablename__ = "case_origin"
    __table_args__ = _schema()

    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.detection_run.id"), primary_key=True)
    case_id: Mapped[int] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.conflict_case.id"), primary_key=True)
    from_case: Mapped[int] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.conflict_case.id"), primary_key=True)
    change: Mapped[str]


class ConflictCaseEvent(Base):
    """One review status change of a case (append-only: a trigger refuses UPDATE, DELETE and TRUNCATE)."""

    __tablename__ = "conflict_case_event"
    __table_args__ = _schema()

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.conflict_case.id"))
    conflict_id: Mapped[int | None] = mapped_column(BigInteger)
    changed_at: Mapped[datetime] = mapped_column(server_default=text("clock_timestamp()"))
    reviewer: Mapped[str]
    from_status: Mapped[str]
    to_status: Mapped[str]
    comment: Mapped[str] = _empty()

    case: Mapped[ConflictCase] = relationship(back_populates="events")


class AuditEvent(Base):
    """One feature write (the revision it made) or submission status change: who, when, before and after
    (append-only)."""

    __tablename__ = "audit_event"
    __table_args__ = _schema()

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(server_default=text("clock_timestamp()"))
    actor: Mapped[str]
    layer: Mapped[str]
    version_id: Mapped[int] = mapped_column(BigInteger)
    revision: Mapped[int | None]
    feature_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str]
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    comment: Mapped[str] = _empty()


class Submission(Base):
    """A construction project written over HTTP under review (合规性审查): its status and latest opinion."""

    __tablename__ = "submission"
    __table_args__ = _schema()

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    layer: Mapped[str]
    version_id: Mapped[int] = mapped_column(BigInteger)
    feature_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(server_default=text("'received'"))
    opinion: Mapped[str] = _empty()
    reviewer: Mapped[str | None]
    reviewed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()

    checks: Mapped[list[SubmissionCheck]] = relationship(order_by="SubmissionCheck.revision")


class SubmissionCheck(Base):
    """The project check of one revision of a submission, as `project-check` answers it (append-only)."""

    __tablename__ = "submission_check"
    __table_args__ = _schema()

    submission_id: Mapped[int] = mapped_column(BigInteger, ForeignKey(f"{SCHEMA}.submission.id"), primary_key=True)
    revision: Mapped[int] = mapped_column(primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(server_default=text("clock_timestamp()"))
    rules_checksum: Mapped[str]
    project_area_m2: Mapped[float]
    conflict_area_m2: Mapped[float]
    conflicts: Mapped[list[Any]]


class RunTile(Base):
    """A finished tile of a distributed run (integrate or detect on Dask), committed with its rows; a run's records
    go when it is attached or fails."""

    __tablename__ = "run_tile"
    __table_args__ = _schema()

    stage: Mapped[str] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tile: Mapped[int] = mapped_column(primary_key=True)
    summary: Mapped[dict[str, Any]]
    finished_at: Mapped[datetime] = _now()


def in_run(rows: type[BasemapPatch] | type[Conflict], run: type[IntegrationRun] | type[DetectionRun]) -> ColumnElement[bool]:
    """The rows of a run, for a join: an incremental run shares its base run's unchanged rows, so a run's rows are
    those stored by a run of its chain and not dropped by a later run up to it."""
    return and_(rows.run_id == any_(run.chain), or_(rows.until_run.is_(None), rows.until_run > run.id))


def use_working_srid(srid: int) -> None:
    """Declare every geometry column in `srid` (the working CRS's EPSG code)."""
    for table in Base.metadata.tables.values():
        for column in table.columns:
            if isinstance(column.type, Geometry):
                column.type.srid = srid


def engine(settings: Settings) -> Engine:
    """An engine (make one per process: it pools connections) on the configured database, the URL `geoservice db`
    uses; the models' geometry columns are declared in the working CRS."""
    use_working_srid(settings.working_srid)
    url = database_url(settings)
    return create_engine("postgresql+psycopg2://", creator=lambda: connect_url(url))
