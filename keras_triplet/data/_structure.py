"""One level of structure of the examples: an array, a tuple / list or a dict of arrays.

Both pipelines (`tf_dataset.py`, `pydataset.py`) take `x` (or what `load_fn` returns)
apart into a flat list of arrays with `flatten` and put each batch back together with
`pack`.
"""


def flatten(x, what):
    """Splits one level of structure: an array, a tuple/list of arrays or a dict of arrays.

    Returns `(kind, keys, arrays)` for `pack`.
    """
    if isinstance(x, dict):
        keys = list(x)
        return "dict", keys, [x[k] for k in keys]
    if isinstance(x, (tuple, list)):
        return "tuple", None, list(x)
    return "array", None, [x]


def pack(kind, keys, values):
    if kind == "dict":
        return dict(zip(keys, values))
    if kind == "tuple":
        return tuple(values)
    return values[0]
