"""`AnchorNegatives`: what the sorted and the direct search of each anchor's negatives share."""

from keras import ops

from keras_triplet._backend import INDEX_DTYPE, count_true, scatter_rows, take_along_rows


class AnchorNegatives:
    """Each anchor's negatives, asked questions at its positive pairs.

    The base of `SortedNegatives` and `DirectNegatives`: the `[B, R]` arrays they are built
    from, each anchor's number of negatives, the query layout, and `count_within`, computed
    once per distinct question (a training step shares one object between the loss's
    miner and the mining statistics).

    Questions are asked at the *query* columns of each row: the positives, the only
    columns whose thresholds matter. They are all `R` columns unless a subclass compacts
    them to `[B, M]` (`_compact`); `query_mask` and `query_distances` are in that layout,
    and `expand` brings a query-layout array back to `[B, R]`. Subclasses implement
    `_count_below(thresholds, inclusive)`, `band` and `closest_beyond` (the package
    docstring, `miners/search/__init__.py`, has the questions).

    Attributes:
        distances, negative_mask, positive_mask: the `[B, R]` arrays it was built from.
        count: `[B]`, the number of negatives of each anchor.
        query_mask: the positive mask in query layout.
        query_distances: the distances in query layout (differentiable).
    """

    def __init__(self, distances, negative_mask, positive_mask):
        self.distances = distances
        self.negative_mask, self.positive_mask = negative_mask, positive_mask
        self._count = None
        self._columns = None
        self.query_mask, self.query_distances = positive_mask, distances
        self._counts = {}

    @property
    def count(self):
        """`[B]`: each anchor's number of negatives, counted when first read (the
        direct search's questions never read it)."""
        if self._count is None:
            self._count = ops.cast(count_true(self.negative_mask, axis=1), INDEX_DTYPE)
        return self._count

    @count.setter
    def count(self, value):
        self._count = value

    def _compact(self, columns, query_mask=None):
        """Query layout `[B, M]`: the given columns of each row (`query_mask`: when not
        simply the positive mask at those columns)."""
        self._columns = columns
        self.query_mask = take_along_rows(self.positive_mask, columns) if query_mask is None else query_mask
        self.query_distances = take_along_rows(self.distances, columns)

    def expand(self, values):
        """A `[B, M]` query-layout array as `[B, R]` (0 outside the query columns)."""
        if self._columns is None:
            return values
        return scatter_rows(values, self._columns, ops.shape(self.distances)[1])

    def count_within(self, offset=0.0, inclusive=False):
        """`[B, M]`: per query column, how many negatives lie below `d(a, p) + offset`
        (`≤` if inclusive); computed once per `(offset, inclusive)`."""
        key = (float(offset), bool(inclusive))
        if key not in self._counts:
            thresholds = self.query_distances + offset if offset else self.query_distances
            self._counts[key] = self._count_below(ops.stop_gradient(thresholds), inclusive)
        return self._counts[key]

    def _count_below(self, thresholds, inclusive):
        raise NotImplementedError

    def band(self, stop_offset, stop_inclusive=False, start_offset=None):
        """`(count, sum)`, `[B, M]` each: the negatives with `d(a, p) + start_offset <
        d(a, n) < d(a, p) + stop_offset` (`≤` at the top if `stop_inclusive`; no lower
        bound when `start_offset` is None); the sum is differentiable."""
        raise NotImplementedError

    def closest_beyond(self, or_farthest=False):
        """`(distance, found)`, `[B, M]` each: the closest negative with `d(a, n) >
        d(a, p)` and whether there is one; where there is none, the distance is the
        farthest negative's if `or_farthest`, else meaningless."""
        raise NotImplementedError
