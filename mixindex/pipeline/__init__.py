"""From files to training batches: EasyDeL's Pipeline API and its legacy ``DatasetMixture``.

``stages`` holds the stage configs, ``stream`` the resumable example streams (source and mix),
``tokenize``, ``pack``, ``load`` and ``save`` one stage each, ``core`` the :class:`Pipeline`
that chains them, and ``legacy`` the ``DatasetMixture`` / ``build_dataset`` API. Nothing is
imported here, so that ``import mixindex`` stays light (tokenizers load on first use).
"""
