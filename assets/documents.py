"""raw_documents: each source's files as normalised, versioned documents; bad files quarantined."""

import dagster as dg

from assets.checks import blocking_specs, check_results
from orchestration.resources import RaglineResource
from ragline import expectations
from ragline.index.publishing import SOURCE_CHANGE_WITHIN_LIMIT, check_change
from ragline.ingest.documents import store_scan
from ragline.ingest.sources import source_fingerprint, stream_source
from ragline.safe_text import printable
from ragline.storage import provenance

CHECKS = (expectations.DOCUMENTS_HAVE_TEXT, SOURCE_CHANGE_WITHIN_LIMIT)
# The source folder's fingerprint at the scan: the file sensor's first tick compares it with the
# folder's, so a sensor without a cursor requests only sources that changed since they were ingested.
FINGERPRINT_KEY = "source_fingerprint"


def raw_documents_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name="raw_documents",
        partitions_def=partitions,
        group_name="ragline",
        kinds={"python", "postgres"},
        description="Normalised text of a source's files, one version per content hash.",
        metadata={
            "table": "ragline.documents",
            "versions_table": "ragline.document_versions",
            "quarantine_table": "ragline.quarantine",
        },
        check_specs=blocking_specs("raw_documents", CHECKS, partitions_def=partitions),
    )
    def raw_documents(context: dg.AssetExecutionContext, ragline: RaglineResource):
        source = ragline.settings().source(context.partition_key)
        # Taken before the scan: a file that changes during it leaves a fingerprint the sensor
        # does not match, so the source is scanned again rather than missed.
        fingerprint = source_fingerprint(source)
        # Read as it is stored: the source's text is never all in memory at once.
        scan = stream_source(source)
        with ragline.database().connection() as conn:
            stats = store_scan(conn, source.name, scan)
            outcomes = expectations.check_documents(conn, source.name)
            # Against what the source serves: an empty root or a mass deletion stops here.
            outcomes.append(check_change(conn, source.name, source.mass_change))
            version = provenance.stored_version(conn, provenance.DOCUMENTS, source=source.name)
        for r in scan.rejections:
            context.log.warning(
                f"quarantined {source.name}:{printable(r.path, 300)}: {r.reason} ({printable(r.detail, 300)})"
            )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": stats.live_documents,
                "files_seen": stats.files_seen,
                "new": stats.new,
                "changed": stats.changed,
                "unchanged": stats.unchanged,
                "restored": stats.restored,
                "deleted": stats.deleted,
                "quarantined": stats.quarantined,
                "quarantine_reasons": stats.quarantine_reasons,
                "root": str(source.root),
                FINGERPRINT_KEY: fingerprint,
            },
            # The live documents' versions: a scan that found nothing new keeps it, and nothing
            # downstream runs for it.
            data_version=dg.DataVersion(version),
            check_results=check_results(outcomes, partition=context.partition_key),
        )

    return raw_documents
