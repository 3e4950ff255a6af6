"""Actuators on the car: the starter interrupt, the payment-reminder buzzer, their digital outputs."""
