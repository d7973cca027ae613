"""The holiday picture for leaders: visitors per site and day, capacity levels, the daily report.

Imports nothing itself: the web process loads :mod:`crowdwatch.reports.daily` and the page,
never the sender (:mod:`crowdwatch.reports.sender`, which reaches the alert channels).
"""
