-- One row per order: latest version across raw batches (the extract overlaps 15 min).
with ranked as (
    select
        order_id,
        customer_id,
        lower(trim(status))          as order_status,
        upper(currency_code)         as currency_code,
        placed_at,
        updated_at,
        _batch_date,
        _loaded_at,
        row_number() over (
            partition by order_id order by updated_at desc, _loaded_at desc
        ) as rn
    from {{ source('orders_raw', 'orders') }}
    where not coalesce(is_test, false)
)

select
    order_id,
    customer_id,
    order_status,
    currency_code,
    placed_at,
    cast(placed_at as date)          as order_date,
    updated_at,
    _batch_date,
    _loaded_at
from ranked
where rn = 1
