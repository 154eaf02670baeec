"""The training engine every method runs on (see ``engine.py``; methods in ``crosstune.methods``).

* :func:`crosstune.train.launch.run` - one job: in this process, or under
  ``accelerate launch`` when ``train.num_processes > 1``;
* :func:`crosstune.train.engine.train` - the work of one process;
* :func:`crosstune.train.settings.resolve` - a method's settings from the config.

``python -m crosstune.train JOB.json`` runs a job file (what ``accelerate launch`` starts).
"""
