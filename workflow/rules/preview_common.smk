# Helpers of rules/preview.smk: the preview rows are written by the read-back jobs
# (check_shards, rules/validate.smk); their input functions are in validate_common.smk.


include: "validate_common.smk"
