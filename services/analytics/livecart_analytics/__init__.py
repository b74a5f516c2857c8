"""Livecart analytics: real-time aggregates: viewers, QoE, danmaku sentiment, product clicks,
funnel, GMV."""
