# Helpers of rules/preview.smk: the paths of the sessions' preview rows, as an input
# function (whether the stage runs: HUB.preview, bids2hub.hub.publish.HubPlan).


def preview_parts(wildcards):
    """Every session's preview row, in shard order."""
    return [L.preview_part(sub, shard) for shard, (sub, _ses) in SETUP.shards.items()]
