-- sqlsmith (seed 1): XX000: ERROR: wrong varnullingrels (b 4) (expected (b)) for Var 3/2
select  
  ref_0.symbol as c0
from 
  public.v_list as ref_0
where ((select date from kis_all.market_holidays limit 1 offset 6)
       >= case when (false) 
        and (true) then (select fetched_at from public.v_orderbook limit 1 offset 71)
         else (select fetched_at from public.v_orderbook limit 1 offset 71)
         end
      ) 
  or (ref_0.market is NULL)
limit 41;
