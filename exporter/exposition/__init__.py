"""Snapshot -> metric families -> bytes.

`native` (the metric contract), `health` (the exporter's own families), `dcgm` (dcgm-exporter's names)
and `pods` (Kubernetes attribution) declare their families once per topology (`series`); `template`
renders every fixed byte of them through prometheus-client and fills in each sample's values;
`render` keeps the template of the current shape; `publish` makes each new snapshot's bytes in the
background, so a scrape only picks them up.
"""
