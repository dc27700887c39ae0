"""Source pipelines through the configured executor: `python -m orchestration.launch SOURCE ...`.

Unlike `ragline materialize` (in-process by design), each run's steps go where $RAGLINE_EXECUTOR
puts them: a process per step, or Celery workers. The code is loaded by reference
(orchestration.definitions, with $RAGLINE_CONFIG), as the workers load it; runs are recorded in the
instance of $DAGSTER_HOME, which the workers must reach too.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

from orchestration.resources import PARTITION_TAG
from ragline.safe_text import printable

DEFINITIONS_MODULE = "orchestration.definitions"


def launch_sources(sources: list[str], instance: dg.DagsterInstance) -> dict[str, bool]:
    """Run the source pipeline for each source, one after another; success per source. For runs at
    once, start one launcher per source (runs launched from threads of one process stalled before
    starting with a Postgres-backed instance), or let the daemon's run queue launch them."""
    from orchestration.definitions import SOURCE_PIPELINE_JOB

    job = ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs").get_reconstructable_job(
        SOURCE_PIPELINE_JOB
    )

    def run(source: str) -> bool:
        with dg.execute_job(job, instance, tags={PARTITION_TAG: source}, raise_on_error=False) as result:
            for event in result.all_events:
                if event.is_step_failure:
                    message = event.event_specific_data.error.message.strip()
                    print(f"  {source}: step {event.step_key} failed: {printable(message)}", file=sys.stderr)
            return result.success

    return {source: run(source) for source in sources}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+")
    args = parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        outcomes = launch_sources(args.sources, instance)
    for source, ok in outcomes.items():
        print(f"source {source}: {'ok' if ok else 'FAILED'}")
    return 0 if all(outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
