"""The local point-of-sale endpoint and page of a station (``[pos] listen``)."""
