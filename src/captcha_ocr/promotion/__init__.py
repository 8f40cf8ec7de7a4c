"""Promotion: the gate (gate.py), the lock that serializes promotions (lock.py), and
scoring the champion on the candidate's test split (rescoring.py).
"""
