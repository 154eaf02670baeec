"""Evaluation: generate, score and aggregate (docs/methods.md section 5).

* :mod:`.items` - benchmark item and prediction files (schema, checks);
* :mod:`.generation` - chat-templated, batched greedy decoding and option
  log-likelihoods (lm-evaluation-harness's ``loglikelihood``);
* :mod:`.predict` - the generate stage for all languages of a benchmark (resumable);
* :mod:`.text`, :mod:`.extract`, :mod:`.metrics`, :mod:`.consistency` - the scores;
* :mod:`.bootstrap` - seeded, paired percentile bootstrap;
* :mod:`.scoring` - the score stage; :mod:`.aggregate` - tables and plots.
"""
