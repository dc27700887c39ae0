"""The Celery app ragline's workers run, on the broker the celery executor uses:
`celery -A orchestration.celery_worker worker -Q dagster --concurrency 1`."""

from dagster_celery.defaults import broker_transport_options
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from orchestration.executors import CELERY_QUEUE, celery_urls

_broker, _backend = celery_urls()
app = make_app({"broker": _broker, "backend": _backend})
app.conf.update(
    task_default_queue=CELERY_QUEUE,
    # A step is minutes of model work: a worker takes one at a time, so an idle worker gets the next.
    worker_prefetch_multiplier=1,
    broker_transport_options=broker_transport_options,
)
execute_plan = create_task(app)
