"""The metric contract, defined once: family names and label sets (`families`), what counts as idle or
under-used (`thresholds`), the recorded series the shipped rules produce (`recorded`) and the defaults
users and manifests rely on (`defaults`). The exposition, the report's queries, the landing page, the
dashboards and the generated alert rules all read these; README's metric table documents them.
"""
