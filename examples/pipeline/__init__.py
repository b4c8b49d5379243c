"""The pipeline example: word counting in three stages of actors, exactly once.

A ``Source`` keeps its input in a ``Log`` and sends each line's words to one of
``PARTITIONS`` ``Counter`` actors (by a hash of the word); each counter keeps
its counts and sends what it counted to the one ``Totals`` actor. Every send
is ``self.send``: recorded with the sender's writes and delivered exactly once,
so the totals are exact whatever node dies when. ``python -m examples.pipeline``
runs it in one process; ``tests/test_example_pipeline.py`` runs it on ``dna node``
processes while killing them.
"""
